#!/usr/bin/env bash
# Checks that the standard OpenStack command-line client works against openstack-sim.
#
# Usage: tests/scripts/openstack-cli-check.sh [path/to/openstack-sim]
# (default: $OPENSTACK_SIM or target/debug/openstack-sim). Starts the simulator on a free
# loopback port, writes a clouds.yaml, runs server/image/flavor/network/floating-ip commands
# (in four `openstack` processes, not one per command) and checks each command's output.
# Exit 0 = all checks passed.
set -euo pipefail

SIM_BIN="${1:-${OPENSTACK_SIM:-target/debug/openstack-sim}}"
if ! command -v openstack >/dev/null 2>&1; then
    echo "SKIP: the 'openstack' command (python-openstackclient) is not installed" >&2
    exit 77
fi
if [[ ! -x "$SIM_BIN" ]]; then
    echo "FAIL: simulator binary not found at $SIM_BIN (build it with: cargo build -p nodepool-tests --bin openstack-sim)" >&2
    exit 1
fi

WORK="$(mktemp -d)"
SIM_PID=""
cleanup() {
    if [[ -n "$SIM_PID" ]]; then
        kill "$SIM_PID" 2>/dev/null || true
        wait "$SIM_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 143" TERM INT

# Isolate the client from the caller's OpenStack settings and caches.
while IFS= read -r var; do unset "$var"; done < <(env | grep -o '^OS_[A-Za-z_]*' || true)
# (HOME stays: a user-level pip install of the client lives under it.)
export XDG_CACHE_HOME="$WORK/cache"
export OS_CLIENT_CONFIG_FILE="$WORK/clouds.yaml"

"$SIM_BIN" --port 0 --boot-delay-ms 300 --write-clouds-yaml "$WORK/clouds.yaml" --cloud-name np-sim-check \
    >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
URL=""
for _ in $(seq 1 100); do
    URL="$(sed -n 's/^openstack-sim listening on //p' "$WORK/sim.out")"
    [[ -n "$URL" ]] && break
    if ! kill -0 "$SIM_PID" 2>/dev/null; then
        echo "FAIL: simulator exited early:" >&2
        cat "$WORK/sim.err" >&2
        exit 1
    fi
    sleep 0.1
done
[[ -n "$URL" ]] || { echo "FAIL: simulator did not report its URL" >&2; exit 1; }
echo "simulator at $URL"

# A second cloud entry using application-credential auth.
cat >>"$WORK/clouds.yaml" <<EOF
  np-sim-check-appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: $URL/identity
      application_credential_id: nodepool-appcred
      application_credential_secret: appcred-secret
    region_name: RegionOne
    identity_api_version: 3
    interface: public
EOF

FAILED=0
# Python start-ups (1 - 4 s each on a loaded machine) were most of this script's time when
# it ran one `openstack` process per command. Now the commands of one cloud run in ONE
# process: the client's interactive mode (cliff) reads them from stdin, one a line, and the
# `echo` setting prints each command line before its output, so the output (stdout and
# stderr merged, unbuffered, in order) splits back into one part per command. The exit
# status of interactive mode says nothing about single commands, so every check below
# looks at its command's own part: a failing command prints its error there, so a check
# for an exact or empty output fails, and so does a check for content it did not print.
#
# Limits of interactive mode: arguments are split on blanks again after quoting, so no
# argument may contain a blank; global options (`--os-cloud`) on its command line would
# also run as commands, so the cloud is chosen with OS_CLOUD.

# session <name> <cloud> <command>...: runs the commands in one `openstack` process.
session() {
    local name=$1 cloud=$2
    shift 2
    printf '%s\n' "$@" >"$WORK/$name.cmds"
    if sort "$WORK/$name.cmds" | uniq -d | grep -q .; then
        echo "FAIL session $name: a command appears twice (its output could not be told apart)" >&2
        exit 1
    fi
    { echo 'set echo true'; cat "$WORK/$name.cmds"; } |
        OS_CLOUD=$cloud PYTHONUNBUFFERED=1 timeout 300 openstack >"$WORK/$name.out" 2>&1 || true
}
# result <name> <command>: what <command> printed in session <name> (blank lines dropped),
# or a note saying it never ran (the session ended before it).
result() {
    local n
    n=$(grep -nxF -- "$2" "$WORK/$1.cmds" | cut -d: -f1)
    [[ -n "$n" ]] || { echo "BUG: '$2' is not a command of session $1" >&2; exit 1; }
    # A command's part starts at the line that echoes it ("<prompt><command>") and ends
    # at the next echoed command.
    awk -v want="$n" -v cmdfile="$WORK/$1.cmds" '
        BEGIN { while ((getline c < cmdfile) > 0) cmds[++ncmd] = c; i = 0 }
        {
            next_cmd = cmds[i + 1]
            prefix = length($0) - length(next_cmd)
            if (i < ncmd && prefix >= 0 && prefix <= 20 && substr($0, prefix + 1) == next_cmd) {
                i++
                next
            }
            if (i == want && $0 != "") print
        }
        END { if (i < want) print "<not run: the openstack session ended before this command>" }
    ' "$WORK/$1.out"
}
check() { # check <description> <command...>: the command (a test on $out) must succeed
    local desc="$1"
    shift
    if "$@"; then
        echo "ok   $desc"
    else
        echo "FAIL $desc; the command printed:" >&2
        sed 's/^/     /' <<<"$out" >&2
        FAILED=1
    fi
}
contains() { # contains <haystack> <needle>
    grep -qF -- "$2" <<<"$1"
}

# A wrong password needs a process of its own (it is an option of the client's command
# line); it runs while the first session runs.
timeout 60 openstack --os-cloud np-sim-check --os-password wrong server list \
    >"$WORK/wrong-password.out" 2>&1 &
wrong_pid=$!

head -c 3000000 /dev/zero >"$WORK/image.raw"
session first np-sim-check \
    "server list -f value -c Name" \
    "image list -f value -c Name -c Status" \
    "flavor list -f value -c Name -c RAM -c VCPUs" \
    "network list -f value -c Name" \
    "floating ip list -f value -c ID" \
    "limits show --absolute -f value -c Name -c Value" \
    "image create --file $WORK/image.raw --disk-format raw --container-format bare --property nodepool_build_id=0000000001 -f value -c status -c size np-image" \
    "image list --property nodepool_build_id=0000000001 -f value -c Name" \
    "image delete np-image" \
    "image list -f value -c Name" \
    "server create --image cirros-0.6.2 --flavor small --network private --property nodepool_provider_name=sim --property nodepool_node_id=0000000001 --wait -f value -c status np0000000001" \
    "server list -f value -c Name -c Status -c Networks" \
    "server show np0000000001 -f value -c properties" \
    "floating ip create public -f value -c floating_ip_address"

out="$(result first "server list -f value -c Name")"
check "server list (empty)" test -z "$out"

out="$(result first "image list -f value -c Name -c Status")"
check "image list shows the default cloud image" contains "$out" "cirros-0.6.2 active"

out="$(result first "flavor list -f value -c Name -c RAM -c VCPUs")"
check "flavor list shows small/medium/large" contains "$out" "medium 8192 4"

out="$(result first "network list -f value -c Name")"
check "network list shows public and private" contains "$(tr '\n' ' ' <<<"$out")" "public private"

out="$(result first "floating ip list -f value -c ID")"
check "floating ip list (empty)" test -z "$out"

out="$(result first "limits show --absolute -f value -c Name -c Value")"
check "limits show --absolute reports the instance quota" contains "$out" "max_total_instances 10"

out="$(result first "image create --file $WORK/image.raw --disk-format raw --container-format bare --property nodepool_build_id=0000000001 -f value -c status -c size np-image")"
check "image create --file uploads the data" contains "$(tr '\n' ' ' <<<"$out")" "3000000 active"

out="$(result first "image list --property nodepool_build_id=0000000001 -f value -c Name")"
check "image list --property finds the uploaded image" test "$out" = "np-image"

out="$(result first "image delete np-image")"
check "image delete" test -z "$out"
out="$(result first "image list -f value -c Name")"
check "image list no longer shows the deleted image" test "$out" = "cirros-0.6.2"

out="$(result first "server create --image cirros-0.6.2 --flavor small --network private --property nodepool_provider_name=sim --property nodepool_node_id=0000000001 --wait -f value -c status np0000000001")"
check "server create --wait reaches ACTIVE" test "$out" = "ACTIVE"

out="$(result first "server list -f value -c Name -c Status -c Networks")"
check "server list shows the server with its address" contains "$out" "np0000000001 ACTIVE"
check "server list shows a private address" contains "$out" "127.10."

out="$(result first "server show np0000000001 -f value -c properties")"
check "server show has the nodepool metadata" contains "$out" "nodepool_node_id"

fip="$(result first "floating ip create public -f value -c floating_ip_address")"
out=$fip
check "floating ip create on public" contains "$fip" "127.24."
# The address goes into the commands below: one line, no blanks.
fip=$(head -n 1 <<<"$fip" | tr -d ' ')

# Application-credential auth (another cloud entry: a process of its own) while the server
# exists.
session appcred np-sim-check-appcred "server list -f value -c Name"
out="$(result appcred "server list -f value -c Name")"
check "application-credential auth works" contains "$out" "np0000000001"

session second np-sim-check \
    "floating ip list -f json" \
    "server add floating ip np0000000001 $fip" \
    "server show np0000000001 -f value -c addresses" \
    "server delete --wait np0000000001" \
    "server list -f value -c Name" \
    "floating ip delete $fip" \
    "floating ip list -f value -c ID"

# (-f json: interactive mode cannot pass the column name "Floating IP Address".)
out="$(result second "floating ip list -f json")"
check "floating ip list shows it" contains "$out" "\"Floating IP Address\": \"$fip\""

out="$(result second "server add floating ip np0000000001 $fip")"
check "server add floating ip" test -z "$out"
out="$(result second "server show np0000000001 -f value -c addresses")"
check "server addresses include the floating ip" contains "$out" "$fip"

out="$(result second "server delete --wait np0000000001")"
check "server delete --wait" test -z "$out"
out="$(result second "server list -f value -c Name")"
check "server list empty after delete" test -z "$out"

out="$(result second "floating ip delete $fip")"
check "floating ip delete" test -z "$out"
out="$(result second "floating ip list -f value -c ID")"
check "floating ip list empty after delete" test -z "$out"

wait "$wrong_pid" || true
out="$(cat "$WORK/wrong-password.out")"
check "wrong password is rejected" contains "$out" "401"

if [[ "$FAILED" != 0 ]]; then
    for f in "$WORK"/*.out; do
        echo "--- $(basename "$f" .out) session (set echo true, then its commands):" >&2
        sed 's/^/     /' "$f" >&2
    done
    echo "openstack CLI check FAILED; simulator log:" >&2
    tail -n 50 "$WORK/sim.err" >&2 || true
    exit 1
fi
echo "openstack CLI check passed"
