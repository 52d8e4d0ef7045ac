"""The run store: the run directory, its ledger of teacher calls and stages, its record tables, the console.

Every family writes through these and nothing else; this layer imports no other part of protege.
"""
