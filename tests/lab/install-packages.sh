#!/bin/sh
# Install the Debian packages the lab tests need, when running as root and
# they are missing.  Without root, say so and leave the lab tests to skip
# (which fails the run under CI=true).
set -eu

packages="iproute2 nftables dnsmasq-base isc-dhcp-client dnsutils curl conntrack isc-dhcp-server kea-dhcp4-server procps iputils-ping chromium libnss3-tools freeradius freeradius-utils mmdebstrap dh-virtualenv debhelper dpkg-dev python3-dev python3-venv build-essential lintian hostapd"

missing=""
for package in $packages; do
    if ! dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $package"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "lab: missing Debian packages:$missing (install them as root, or run 'make test' as root)" >&2
    exit 0
fi

echo "lab: installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the packages' own services (isc-dhcp-server, kea) from
# starting on the host: the lab starts its own copies inside namespaces.
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
fi
status=0
apt-get install -y -qq --no-install-recommends $missing || status=$?
[ -n "$created_policy" ] && rm -f "$policy"
exit $status
