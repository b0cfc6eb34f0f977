"""The venue staff's web page: who is online, vouchers, the day in a chart, always-allowed devices."""
