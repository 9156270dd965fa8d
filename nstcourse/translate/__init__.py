"""The translation track: unpaired image-to-image translation with CycleGAN (notebook 11).

- ``cyclegan``: the ResNet generator (Johnson et al.'s network as Zhu et al. use it), the
  70×70 PatchGAN discriminator, the least-squares GAN, cycle and identity losses, the image
  pool, the linear-decay schedule and ``CycleGANStep``, one update for the course's one
  training loop (``nstcourse.training.train``);
- ``data``: two folders of images as unpaired random crops;
- ``recipes``: ``CycleGANRecipe``, ``train_cyclegan`` and ``TranslationScore``;
- ``metrics``: offline measures of a translator;
- ``models``: the shipped horse ↔ zebra model and a generator applied at any image size.

Built on the plumbing of ``nstcourse``; knows no other track.
"""
