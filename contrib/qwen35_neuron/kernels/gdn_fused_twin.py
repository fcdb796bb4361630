"""Twin of `gdn_decode_fused` (gdn_tkg's op boundary): gates from the raw projections, the
recurrent gated delta rule, then the gated RMSNorm - the model's own pieces, composed.
"""

from __future__ import annotations

from ..model.deltanet import gated_decode as fused_decode_reference  # noqa: F401 - the twin lives in model/
