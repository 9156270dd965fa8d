"""The style track: style transfer by optimisation (notebooks 01-03), feed-forward style
networks (04), conditional instance norm (09) and arbitrary style with AdaIN (10).
``gatys``: optimising the image (content reconstruction, texture synthesis, style transfer
and its colour, space and scale controls); ``fast_style``: Johnson's ``TransformNet``,
``PerceptualLoss`` and ``stylize_batch``; ``cin``: conditional instance normalisation and
style mixes; ``adain``: the AdaIN layer, its decoder and ``AdaINNet``; ``recipes``: one
recipe dataclass per technique and ``train_style``; ``models``: the shipped networks by
name and how to load them; ``reference``: lengstrom's reference networks rebuilt in
PyTorch, for benchmarks only. Built on the plumbing of ``nstcourse``; knows no other track.
"""
