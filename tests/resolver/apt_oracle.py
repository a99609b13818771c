"""APT's answers for comb's resolver tests, from libapt-pkg itself.

`apt-get --simulate` loads APT's whole cache for every request (about a
second on a full distribution); this loads it once. Run with the system
Python and python3-apt, `APT_CONFIG` naming the private APT to use:

    apt_oracle.py STATUS < names

STATUS is the dpkg status to resolve on. Each line of input names a
package of the index (a dummy whose Depends are a build's dependencies);
each line of output is its answer as JSON: the packages APT would install
or upgrade (`name=version`), and how many packages it leaves broken or
would remove (both 0 when it can install the dummy). The steps are
apt-get install's: mark the package, mark it again with its dependencies,
and call the problem resolver if anything is left broken.
"""

import json
import sys

import apt_pkg

apt_pkg.init_config()
apt_pkg.config.set("Dir::State::status", sys.argv[1])
apt_pkg.config.set("Dir::Cache::pkgcache", "")
apt_pkg.init_system()
cache = apt_pkg.Cache(None)
depcache = apt_pkg.DepCache(cache)

for line in sys.stdin:
    name = line.strip()
    depcache.init()
    package = cache[name]
    depcache.mark_install(package, False, True)
    depcache.mark_install(package, True, True)
    if depcache.broken_count > 0:
        fix = apt_pkg.ProblemResolver(depcache)
        fix.clear(package)
        fix.protect(package)
        try:
            fix.resolve(True)
        except SystemError:
            pass
    install = []
    for p in cache.packages:
        if p.name == name:
            continue
        if depcache.marked_install(p) or depcache.marked_upgrade(p) or depcache.marked_downgrade(p):
            install.append(p.name + "=" + depcache.get_candidate_ver(p).ver_str)
    answer = {
        "name": name,
        "broken": depcache.broken_count,
        "remove": depcache.del_count,
        "install": sorted(install),
    }
    print(json.dumps(answer), flush=True)
