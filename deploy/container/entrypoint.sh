#!/bin/sh
# Entrypoint of Tusk's container image: make the pod's cgroups writable, then run `tusk`.
#
# Full isolation gives every PHP instance a cgroup of its own (memory, CPU, pids, freezer)
# under Tusk's. Kubernetes (and Docker) mount /sys/fs/cgroup read-only in unprivileged
# containers, even when they hold CAP_SYS_ADMIN; with that capability the mount can be made
# writable again. That changes only this container's view: it sees its own cgroup subtree
# (cgroup namespace), so instances stay inside the pod's limits. Where it fails (no
# CAP_SYS_ADMIN, an AppArmor profile that denies mount), Tusk reports what is missing and,
# with --sandbox auto, runs degraded; with --sandbox full it refuses to start.
# TUSK_REMOUNT_CGROUP=0 skips it.
set -eu

if [ "${TUSK_REMOUNT_CGROUP:-1}" != 0 ] && [ "${TUSK_SANDBOX:-auto}" != off ] \
  && [ "$(id -u)" = 0 ]; then
  # /proc/self/mountinfo: field 5 is the mount point, field 6 its per-mount options.
  awk '$5 == "/sys/fs/cgroup" || index($5, "/sys/fs/cgroup/") == 1 { print $5, $6 }' \
    /proc/self/mountinfo | while read -r point options; do
    case ",$options," in
      *,ro,*)
        # bind: change this mount's flags only, not the (host-wide) cgroup superblock's.
        if mount -o remount,bind,rw "$point" 2>/dev/null || mount -o remount,rw "$point" 2>/dev/null; then
          echo "tusk-entrypoint: made $point writable for per-instance cgroups" >&2
        else
          echo "tusk-entrypoint: $point is read-only and cannot be remounted (see tusk doctor)" >&2
        fi
        ;;
    esac
  done
fi

exec tusk "$@"
