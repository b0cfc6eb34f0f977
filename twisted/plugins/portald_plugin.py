from twisted.application.service import ServiceMaker

portald = ServiceMaker(
    "portald", "portald.tap", "A captive portal: DNS, HTTP, DHCP leases and nftables.", "portald"
)
