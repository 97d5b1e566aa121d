"""keras-lottery: the Lottery Ticket Hypothesis (Frankle & Carbin, ICLR 2019) in Keras.

Importing the package does not import TensorFlow; modules that need it import it from
:mod:`keras_lottery.backend`, which selects legacy Keras 2 for tfmot.
"""

__version__ = "0.1.0"
