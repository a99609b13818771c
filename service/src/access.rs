//! Who a client is, from the kernel (`SO_PEERCRED`), and whether a
//! pocket's access list lets it in.

use comb_engine::PocketConfig;
use nix::unistd::{Gid, Group, Uid, User};
use serde::Serialize;
use std::os::fd::AsFd;

/// A client as the kernel knows it when it connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    /// The user name of `uid` (`uid:N` when the user database has none).
    pub user: String,
    /// Names of the user's groups: its primary group and supplementary ones.
    pub groups: Vec<String>,
}

impl Peer {
    /// The peer of a connected Unix socket.
    pub fn of(socket: &impl AsFd) -> Result<Peer, String> {
        let (uid, gid, pid) = peer_ids(socket)?;
        Ok(Peer::from_ids(uid, gid, pid))
    }

    /// Names and groups of `uid` from the user and group databases.
    pub fn from_ids(uid: u32, gid: u32, pid: i32) -> Peer {
        let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
        let mut gids = vec![Gid::from_raw(gid)];
        if let Some(u) = &user {
            if let Ok(name) = std::ffi::CString::new(u.name.as_str()) {
                if let Ok(list) = nix::unistd::getgrouplist(&name, u.gid) {
                    gids.extend(list);
                }
            }
            gids.push(u.gid);
        }
        gids.sort_by_key(|g| g.as_raw());
        gids.dedup();
        let groups = gids
            .into_iter()
            .filter_map(|g| Group::from_gid(g).ok().flatten().map(|g| g.name))
            .collect();
        Peer {
            uid,
            gid,
            pid,
            user: user.map_or_else(|| format!("uid:{uid}"), |u| u.name),
            groups,
        }
    }

    /// Whether `pocket`'s access list names this user or one of its groups.
    pub fn may_use(&self, pocket: &PocketConfig) -> bool {
        pocket.users.contains(&self.user) || pocket.groups.iter().any(|g| self.groups.contains(g))
    }
}

/// The uid, gid and pid of a connected Unix socket's peer, as the host
/// knows them (`SO_PEERCRED`, read from the host's user namespace when the
/// daemon runs in its own).
pub fn peer_ids(socket: &impl AsFd) -> Result<(u32, u32, i32), String> {
    comb_engine::host::peer(socket.as_fd()).map_err(|e| format!("SO_PEERCRED: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pocket(users: &[&str], groups: &[&str]) -> PocketConfig {
        PocketConfig {
            name: "dev".into(),
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            allow_backtracking: false,
            publish: "/tmp/x".into(),
            sign_with: None,
            frozen: false,
            remote_writers: Vec::new(),
        }
    }

    #[test]
    fn users_and_groups_come_from_the_databases() {
        let root = Peer::from_ids(0, 0, 1);
        assert_eq!(root.user, "root");
        assert!(root.groups.contains(&"root".to_string()));
        assert!(root.may_use(&pocket(&["root"], &[])));
        assert!(root.may_use(&pocket(&[], &["root"])));
        assert!(!root.may_use(&pocket(&["alice"], &["developers"])));
        let nobody = Peer::from_ids(4_000_000, 4_000_000, 1);
        assert_eq!(nobody.user, "uid:4000000");
        assert!(nobody.groups.is_empty());
    }
}
