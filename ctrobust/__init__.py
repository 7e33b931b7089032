"""ctrobust: is a deep-learning CT reconstructor trustworthy?"""

__version__ = "0.1.0"
