# shellcheck shell=bash disable=SC2034,SC2154 # sourced: `apt` is used there, `who` set there
# Shared by spec/harness/vm/fetch-kernel and bench/peers/build-kublk (sourced, not
# run): apt on a private sources list and private state under a cache
# directory, so the host's apt configuration is neither needed nor touched.
# The caller defines die (print its message, exit 1) and sets `who`, the
# name its messages start with.

# The host's Debian mirror, read at run time so no host name lives in the repo:
# the URIs of the deb822 stanza whose Suites has bookworm, else the one-line
# sources.list entry for bookworm.
mirror_uri() {
	local f=/etc/apt/sources.list.d/debian.sources
	if [ -r "$f" ]; then
		awk '/^[[:space:]]*#/ { next }
			NF == 0 { if (ok && uri != "") { print uri; uri = ""; exit } ok = 0; uri = ""; next }
			tolower($1) == "uris:" { uri = $2 }
			tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == "bookworm") ok = 1 }
			END { if (ok && uri != "") print uri }' "$f"
	else
		awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			if ($(i + 1) == "bookworm") { print $i; exit } }' /etc/apt/sources.list
	fi
}

# apt_private DIR SUITE...: a private apt in DIR reading the main component
# of each SUITE from the host's mirror; sets the array `apt`, the options
# that make apt-get and apt-cache use it.
apt_private() {
	local dir=$1 uri suite
	shift
	uri=$(mirror_uri)
	[ -n "$uri" ] || die "no bookworm mirror found in the host's apt sources"
	mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
	for suite in "$@"; do
		echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main"
	done >"$dir/sources.list"
	apt_suites=$*
	# Sandbox::User=root: apt's _apt user cannot enter a private $HOME cache.
	apt=(-q -o "Dir::Etc::sourcelist=$dir/sources.list" -o Dir::Etc::sourceparts=-
		-o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache"
		-o APT::Sandbox::User=root)
}

# apt_private_update DIR: apt-get update on the private apt of DIR, once
# more after a pause if the mirror failed; an archive key the host's
# keyring does not know yet is fetched by upgrading debian-archive-keyring.
apt_private_update() {
	local dir=$1
	if apt_update_once "$dir" || { sleep 3 && apt_update_once "$dir"; }; then return 0; fi
	grep -qiE 'NO_PUBKEY|EXPKEYSIG|not signed|signature' "$dir/update.log" ||
		die "apt-get update failed: $(tail -n3 "$dir/update.log")"
	echo "$who: upgrading debian-archive-keyring" >&2
	if ! { apt-get -q update && apt-get -q install -y debian-archive-keyring; } >&2 ||
		! apt_update_once "$dir"; then
		die "cannot verify $apt_suites: $(tail -n3 "$dir/update.log")"
	fi
}
apt_update_once() { apt-get "${apt[@]}" --error-on=any update >"$1/update.log" 2>&1; }
