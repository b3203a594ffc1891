"""Decimal arithmetic precision for every process (imported first by the app package).

Columns are NUMERIC(36,18): 18 integer and 18 fractional digits. Python's default context has 28
significant digits, so rounding any amount of 10^10 or more to 18 places raised InvalidOperation,
and products lost digits silently. 60 digits hold every product of two column values exactly.
Set at import, before any thread or greenlet exists: each new context is a copy of the default.
"""

import decimal

ARITHMETIC_PRECISION = 60

decimal.DefaultContext.prec = ARITHMETIC_PRECISION
decimal.getcontext().prec = ARITHMETIC_PRECISION
