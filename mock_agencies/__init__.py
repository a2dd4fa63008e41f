"""Mock agencies: real servers that implement the agencies' ICDs from the agency side.

They exist so court-side implementations (our gateway adapters and independent ones) can be
tested end to end against something that follows the specs to the letter, with fixtures,
a state ledger and fault injection that a real agency would never offer.
"""
