"""Offline analysis tools: SDK-manifest check of the neuron layer, capacity and roofline model.

Pure Python (no Neuron SDK, no torch): these run anywhere and say what can be known without
hardware. Every number they print is modelled, not measured.
"""
