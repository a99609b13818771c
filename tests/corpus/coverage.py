#!/usr/bin/env python3
"""What each source package covers, from a comb store's Sources index.

    coverage.py [--store DIR] [--served] [-v] [NAME...]

NAME defaults to every recipe of the corpus (the directories beside this
script). For each it prints the version, the Format, the size of its files,
the debhelper compat level its Build-Depends ask for, and what its
Build-Depends* hold: build profiles, architecture lists, alternatives,
:native/:any qualifiers and the build-system helpers; -v prints the
Build-Depends* too. With --served it asks the host's mirror (the first
URIs: of /etc/apt/sources.list.d/debian.sources) for each file with
`curl -sfI` and names those that are not served.

The index is STORE/trees/index-*/main/source/Sources (after `comb update`;
STORE defaults to /var/cache/comb-corpus-store).
"""

import glob
import os
import re
import subprocess
import sys


def paragraphs(path):
    para, key = {}, None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                if para:
                    yield para
                para, key = {}, None
            elif line[0] in " \t":
                para[key] += "\n" + line
            else:
                key, _, value = line.partition(":")
                para[key] = value.strip()
    if para:
        yield para


def files(p):
    out = []
    for line in p.get("Files", "").strip().split("\n"):
        parts = line.split()
        if len(parts) == 3:
            out.append((parts[2], int(parts[1])))
    return out


def build_depends(p):
    fields = ("Build-Depends", "Build-Depends-Arch", "Build-Depends-Indep")
    return ", ".join(p[f] for f in fields if p.get(f)).replace("\n", " ")


def compat(bd):
    m = re.search(r"debhelper-compat \(= (\d+)\)", bd)
    if m:
        return m.group(1)
    m = re.search(r"debhelper \(>= ?(\d+)", bd)
    return f"debhelper>={m.group(1)}" if m else "?"


HELPERS = ["cmake", "meson", "dh-python", "dh-sequence-python3",
           "pybuild-plugin-pyproject", "libmodule-build-perl", "perl-xs-dev",
           "cdbs", "autoconf", "automake", "dh-autoreconf"]


def features(bd):
    found = []
    profiles = sorted(set(re.findall(r"<([^>]*)>", bd)))
    if profiles:
        found.append("profiles:" + ";".join(profiles))
    arches = sorted(set(re.findall(r"\[([^\]]*)\]", bd)))
    if arches:
        found.append("arch:" + ";".join(a if len(a) < 30 else a[:27] + "..." for a in arches))
    if "|" in bd:
        found.append("alternatives")
    for q in (":native", ":any"):
        if q in bd:
            found.append(q)
    for tool in HELPERS:
        if re.search(r"(^|[ ,])" + re.escape(tool) + r"([ ,:(<\[]|$)", bd):
            found.append(tool)
    return found


def mirror():
    text = open("/etc/apt/sources.list.d/debian.sources").read()
    return re.search(r"^URIs:\s*(\S+)", text, re.M).group(1).rstrip("/")


def main(argv):
    store = "/var/cache/comb-corpus-store"
    served = verbose = False
    names = []
    args = iter(argv)
    for a in args:
        if a == "--store":
            store = next(args)
        elif a == "--served":
            served = True
        elif a == "-v":
            verbose = True
        else:
            names.append(a)
    here = os.path.dirname(os.path.abspath(__file__))
    if not names:
        names = sorted(d for d in os.listdir(here)
                       if os.path.isfile(os.path.join(here, d, "recipe.toml")))
    index = glob.glob(os.path.join(store, "trees/index-*/main/source/Sources"))
    if not index:
        sys.exit(f"no Sources index in {store}: run `comb update --store {store}` first")
    sources = {p["Package"]: p for p in paragraphs(index[0])}
    base = mirror() if served else None
    for name in names:
        p = sources.get(name)
        if p is None:
            print(f"{name}: not in the index")
            continue
        bd = build_depends(p)
        size = sum(s for _, s in files(p)) // 1024
        line = f"{name} {p['Version']} [{p.get('Format')}] {size} KiB compat={compat(bd)} " + " ".join(features(bd))
        if served:
            missing = []
            for f, _ in files(p):
                url = f"{base}/{p['Directory']}/{f}"
                r = subprocess.run(["curl", "-sfI", "-o", "/dev/null", url])
                if r.returncode != 0:
                    missing.append(f)
            line += "  served" if not missing else "  NOT SERVED: " + " ".join(missing)
        print(line)
        if verbose:
            print("    " + bd)


if __name__ == "__main__":
    main(sys.argv[1:])
