"""The super-resolution track: SRCNN (notebook 05), ESPCN (06), VDSR (07), SRResNet and
SRGAN, and Johnson et al.'s feature-loss SR (08), trained and scored under the papers'
protocol. ``data``: MATLAB's bicubic degradation (``imresize``, ``degrade``), the
benchmark sets and training patches; ``srcnn``, ``espcn``, ``vdsr``, ``srgan``: the
networks (``srgan`` also its discriminator, VGG content loss and ``SRGANStep``),
``perceptual`` (Johnson et al.'s network, its loss and ``feature_distance``);
``models``: what each model is fed, ``super_resolve``, ``evaluate`` and the shipped
checkpoints; ``recipes``: one recipe dataclass per model and ``train_sr``;
``reference``: published third-party checkpoints loaded into our networks, for
comparison only. Built on the plumbing of ``nstcourse`` (scores from ``metrics``, Y from
``colour``); knows no other track.
"""
