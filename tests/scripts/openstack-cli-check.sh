#!/usr/bin/env bash
# Checks that the standard OpenStack command-line client works against openstack-sim.
#
# Usage: tests/scripts/openstack-cli-check.sh [path/to/openstack-sim]
# (default: $OPENSTACK_SIM or target/debug/openstack-sim). Starts the simulator on a free
# loopback port, writes a clouds.yaml, runs server/image/flavor/network/floating-ip commands
# and checks their output. Exit 0 = all checks passed.
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
os() {
    timeout 120 openstack --os-cloud "${CLOUD:-np-sim-check}" "$@" 2>"$WORK/last.err"
}
check() { # check <description> <command...>: command output must be non-empty and succeed
    local desc="$1"
    shift
    if "$@"; then
        echo "ok   $desc"
    else
        echo "FAIL $desc" >&2
        sed 's/^/     /' "$WORK/last.err" >&2 || true
        FAILED=1
    fi
}
contains() { # contains <haystack> <needle>
    grep -qF -- "$2" <<<"$1"
}

out="$(os server list -f value -c Name || true)"
check "server list (empty)" test -z "$out" -a ! -s "$WORK/last.err"

out="$(os image list -f value -c Name -c Status || true)"
check "image list shows the default cloud image" contains "$out" "cirros-0.6.2 active"

out="$(os flavor list -f value -c Name -c RAM -c VCPUs || true)"
check "flavor list shows small/medium/large" contains "$out" "medium 8192 4"

out="$(os network list -f value -c Name || true)"
check "network list shows public and private" contains "$(tr '\n' ' ' <<<"$out")" "public private"

out="$(os floating ip list -f value -c ID || true)"
check "floating ip list (empty)" test -z "$out" -a ! -s "$WORK/last.err"

out="$(os limits show --absolute -f value -c Name -c Value || true)"
check "limits show --absolute reports the instance quota" contains "$out" "max_total_instances 10"

head -c 3000000 /dev/zero >"$WORK/image.raw"
out="$(os image create --file "$WORK/image.raw" --disk-format raw --container-format bare \
    --property nodepool_build_id=0000000001 -f value -c status -c size np-image || true)"
check "image create --file uploads the data" contains "$(tr '\n' ' ' <<<"$out")" "3000000 active"

out="$(os image list --property nodepool_build_id=0000000001 -f value -c Name || true)"
check "image list --property finds the uploaded image" test "$out" = "np-image"
check "image delete" os image delete np-image

out="$(os server create --image cirros-0.6.2 --flavor small --network private \
    --property nodepool_provider_name=sim --property nodepool_node_id=0000000001 \
    --wait -f value -c status np0000000001 || true)"
check "server create --wait reaches ACTIVE" test "$out" = "ACTIVE"

out="$(os server list -f value -c Name -c Status -c Networks || true)"
check "server list shows the server with its address" contains "$out" "np0000000001 ACTIVE"
check "server list shows a private address" contains "$out" "127.10."

out="$(os server show np0000000001 -f value -c properties || true)"
check "server show has the nodepool metadata" contains "$out" "nodepool_node_id"

fip="$(os floating ip create public -f value -c floating_ip_address || true)"
check "floating ip create on public" contains "$fip" "127.24."

out="$(os floating ip list -f value -c "Floating IP Address" || true)"
check "floating ip list shows it" contains "$out" "$fip"

check "server add floating ip" os server add floating ip np0000000001 "$fip"
out="$(os server show np0000000001 -f value -c addresses || true)"
check "server addresses include the floating ip" contains "$out" "$fip"

out="$(CLOUD=np-sim-check-appcred os server list -f value -c Name || true)"
check "application-credential auth works" contains "$out" "np0000000001"

check "server delete --wait" os server delete --wait np0000000001
out="$(os server list -f value -c Name || true)"
check "server list empty after delete" test -z "$out" -a ! -s "$WORK/last.err"

check "floating ip delete" os floating ip delete "$fip"

out="$(timeout 60 openstack --os-cloud np-sim-check --os-password wrong server list 2>&1 || true)"
check "wrong password is rejected" contains "$out" "401"

if [[ "$FAILED" != 0 ]]; then
    echo "openstack CLI check FAILED; simulator log:" >&2
    tail -n 50 "$WORK/sim.err" >&2 || true
    exit 1
fi
echo "openstack CLI check passed"
