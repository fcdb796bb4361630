"""The Neuron model's NxD layout, pure torch (no Neuron import, works on any machine).

:mod:`.layout`: the checkpoint NxD shards (our canonical names in rank-major layout plus NxD's own
module names) and the aliased state buffers; :mod:`.rank_files`: NxD's per-rank checkpoint files,
written tensor by tensor. The shell that imports the SDK (``qwen35_neuron.neuron``) builds on these.
"""
