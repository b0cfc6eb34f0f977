"""
Vouchers: codes the front desk hands out, each good for a time from its
first use, on a few devices at once.  L{portald.vouchers.codes} makes and
hashes the codes, L{portald.vouchers.book} keeps the vouchers and decides
redemptions (asking the authorization table which sessions each has), and
L{portald.vouchers.method} is the way in the portal shows.  May import the
table, the store and the auth interface; nothing of the web.
"""
