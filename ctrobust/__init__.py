"""ctrobust: is a deep-learning CT reconstructor trustworthy?"""

__version__ = "0.2.0"  # part of every stage fingerprint: a new version recomputes caches
