"""Backend-neutral decoding bookkeeping, below the CPU runtime and the Neuron shell alike.

:mod:`.buckets`: NxDI's bucket rule and the chunk schedule of long prompts; :mod:`.rows`: a row's
request state, the checks a request passes before it touches any row, and the decode-until-done loop;
:mod:`.acceptance`: speculative decoding's draft-count check, acceptance statistics and emission rule.
"""
