# shellcheck shell=bash disable=SC2034 # sourced: the variables are used there
# Shared by spec/harness/vm/fetch-kernel and spec/harness/vm/run (sourced, not run).
# Kernel module sets and a generic, modinfo-based dependency resolver, so one
# code path copes with modules that are built in on one kernel and not on the
# other.

# Loaded by the guest's /init (virtio_pci is built in on Debian, listed anyway).
VM_BOOT_MODULES="virtio_pci 9pnet_virtio 9p ublk_drv loop ext4"
# Only copied to /run/ublk-vm/modules: tests insmod them with their own
# parameters. Their dependencies (e.g. configfs for null_blk) load at boot.
VM_TEST_MODULES="brd null_blk nbd"
# Loaded at boot too, for storage stacked on ublk devices: md RAID-1, LVM and
# LUKS2 (dm-crypt with the algorithms of its default cipher, which the
# kernel would otherwise ask modprobe for, and the guest has none), plus
# XFS (crash_spec's power-cut states), plus whatever the user names in
# UBLK_VM_MODULES (e.g. "raid456"), dependencies resolved.
VM_STACK_MODULES="md_mod raid1 dm_mod dm_crypt xts aes_generic aesni_intel sha256_generic xfs"
VM_BOOT_MODULES="$VM_BOOT_MODULES $VM_STACK_MODULES ${UBLK_VM_MODULES:-}"
# Asked for, and not missed where a kernel has no module of that name:
# virtio_pci is built in, and 7.x's packages ship no modules.builtin that
# would say so; 7.x's crypto/aes.c and sha256.c (drivers "aes-lib", over
# lib/crypto, built in by Debian) replaced aes_generic and sha256_generic.
VM_QUIET_MODULES="virtio_pci aes_generic sha256_generic"

# vm_cache_dir KERNEL: where fetch-kernel keeps that kernel.
vm_cache_dir() {
	echo "${UBLK_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ublk-lua/vm}/$1"
}

# mod_index DIR: one line per module file under DIR, "m NAME FILE" for its
# own name and "a ALIAS FILE" per plain alias (softdeps name aliases such as
# crypto-crc32c). Names use '_' for '-', as the kernel does.
mod_index() {
	find "$1" -name '*.ko*' -print0 | xargs -0 -r modinfo 2>/dev/null | awk '
		$1 == "filename:" { f = $2; n = f; sub(/.*\//, "", n); sub(/\.ko.*/, "", n)
			gsub(/-/, "_", n); print "m", n, f }
		$1 == "alias:" && $2 !~ /[*:]/ { a = $2; gsub(/-/, "_", a); print "a", a, f }'
}

# mod_files INDEX NAME: files providing NAME: the module of that name, else
# every module aliased to it; nothing means built in (or absent).
mod_files() {
	awk -v n="$2" '$2 == n && $1 == "m" { print $3; m = 1 }
		$2 == n && $1 == "a" { a[++k] = $3 }
		END { if (!m) for (i = 1; i <= k; i++) print a[i] }' "$1"
}

# mod_closure INDEX NAME...: files of NAMEs and of everything they need
# (modinfo depends and softdeps), dependencies first, each once.
# Uses the global MOD_SEEN, so callers can skip what they already have.
MOD_SEEN=" "
mod_closure() {
	local index=$1 name f deps
	shift
	for name in "$@"; do
		name=${name//-/_}
		case $MOD_SEEN in *" $name "*) continue ;; esac
		MOD_SEEN="$MOD_SEEN$name "
		for f in $(mod_files "$index" "$name"); do
			case $MOD_SEEN in *" $f "*) continue ;; esac
			MOD_SEEN="$MOD_SEEN$f "
			# softdep reads like "pre: a b post: c"; all are loaded first.
			deps="$(modinfo -F depends "$f" | tr , ' ') $(modinfo -F softdep "$f" | sed 's/[a-z]*://g')"
			# shellcheck disable=SC2086 # word splitting of the name list is wanted
			mod_closure "$index" $deps
			echo "$f"
		done
	done
}
