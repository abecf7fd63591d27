#!/usr/bin/env bash
# Fails when the tests left anything behind: processes of the Go-built tools,
# processes still inside simulated nodes, network namespaces or claims of
# simulated networks, real nodes' cgroups, nbdfuse mounts and loop devices.
# Run after the test command, on a machine where no lab is running (a running
# `tandem lab` is, rightly, reported as a leftover).
set -uo pipefail
found=0
report() { echo "leftover: $*" >&2; found=1; }

tools_cache=${TANDEM_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/tools}
while read -r pid args; do
  [ -n "$pid" ] && report "process $pid: $args"
done < <(pgrep -af -- "$tools_cache/|tandem-cp-|lab-test-| nbd-relay " | grep -v -e pgrep -e check-leftovers || true)

for ns in $(ip netns list 2>/dev/null | awk '/^tandem-/{print $1}'); do
  report "network namespace $ns"
  for pid in $(ip netns pids "$ns" 2>/dev/null); do report "process $pid in $ns: $(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null)"; done
done
for claim in /run/tandem-sim/*; do
  [ -e "$claim" ] && report "simulated network claim $claim"
done

# Real nodes (lab/cgroups.ts) create /tandem-<run>-node-N in every cgroup v1 hierarchy.
for dir in /sys/fs/cgroup/*/tandem-*; do
  [ -d "$dir" ] && report "cgroup $dir"
done

# Node attach (nbdfuse + loop devices) must undo itself. Not seen here: a loop device whose FUSE
# mount went away shows only "/disk" as its file, and one such loop outlives csi-restart's
# data-plane-kill cases in the kernel (autoclear set, no opener, no mount; docs/testing.md).
while read -r line; do
  [ -n "$line" ] && report "nbdfuse mount: $line"
done < <(awk '$0 ~ /tandem-nbdfuse:/ {print $5}' /proc/self/mountinfo)
while read -r dev file; do
  [ -n "$dev" ] && report "loop device $dev on $file"
done < <(losetup --list --noheadings --output NAME,BACK-FILE 2>/dev/null | grep -e 'tandem' || true)

if [ $found -eq 0 ]; then echo "check-leftovers: nothing left behind" >&2; fi
exit $found
