"""MotorBandSignLib: the Qt-free pipeline behind the MotorBandSign Slicer module.

Every front end (the Slicer module, the ``motorband`` command, a Python console, a web app)
calls :mod:`MotorBandSignLib.pipeline`. This package imports no Qt, ctk, ``slicer.app`` or
``slicer.modules``; the only module that touches MRML is :mod:`MotorBandSignLib.mrml`.
"""

__version__ = "0.1.0"
