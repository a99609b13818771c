#!/bin/sh
# Makes a tiny root file system from Debian's busybox-static, for trying
# `comb sandbox run`. Prints the directory it made.
#   usage: examples/busybox-root.sh [DIR]     (default /tmp/comb-busybox-root)
set -eu
dir=${1:-/tmp/comb-busybox-root}
busybox=/bin/busybox
if ! "$busybox" --list >/dev/null 2>&1; then
    echo "busybox not found: apt-get install busybox-static" >&2
    exit 1
fi
mkdir -p "$dir/bin" "$dir/etc" "$dir/root" "$dir/home/builder"
cp "$busybox" "$dir/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nbuilder:x:1000:1000:builder:/home/builder:/bin/sh\n' > "$dir/etc/passwd"
printf 'root:x:0:\nbuilder:x:1000:\n' > "$dir/etc/group"
chown 1000:1000 "$dir/home/builder" 2>/dev/null || true
echo "$dir"
