"""Parts every mock agency shares: fixture loading, clocks, rate limits and fault injection.

Kept agency-neutral so the bank (CBAS) and land-registry (RERS) mocks reuse them unchanged.
"""
