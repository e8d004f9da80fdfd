"""Pure tensor maths for compression: masks, low-rank projection, quantisers, accounting."""
