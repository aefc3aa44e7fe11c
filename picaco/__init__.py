"""picaco: PICACO meta-instruction optimization (arXiv 2507.16679) with no Prefect import.

The public API grows here: `optimize`, `evaluate`, `load_composition`, ... Submodules are imported
lazily so that `import picaco` stays cheap (no torch, no SDKs).
"""

__version__ = "0.1.0"
