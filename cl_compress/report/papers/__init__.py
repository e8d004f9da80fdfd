"""The papers' claim checks, one module per paper beside the strategy name it judges; each
registers itself with :func:`cl_compress.report.claim_base.register_claim`. Importing this
package registers the built-in ones (as :mod:`cl_compress.strategies.builtin` does for
strategies); :mod:`cl_compress.report.claims` looks them up."""

from cl_compress.report.papers import ada_qpacknet, cacl, lrpet, packnet

__all__ = ["ada_qpacknet", "cacl", "lrpet", "packnet"]
