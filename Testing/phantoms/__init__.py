"""Physics phantoms of the motor band sign (test and demo machinery; not part of the product package MotorBandSignLib).

``phantoms.simulate`` makes simulated cases with known truth (``fixture(name)``, ``demo_case()``,
``generate_case(config)``); ``phantoms.template_anatomy`` is its template-space model; ``demo.py``
writes the demo case to disk (``make demo``). Import the submodules explicitly; nothing is
re-exported here.
"""
