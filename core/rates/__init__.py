"""Exchange rates for fiat-priced invoices: sources, their parsers and the router.

Owns nothing durable: a quote is locked into the invoice by its creator.
Rates are Decimal end to end (never float); a source that cannot answer
says why and the router asks the next one.
"""
