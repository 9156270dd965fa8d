"""The translation track: unpaired image-to-image translation with CycleGAN (notebook 11,
to come). ``cyclegan``: the ResNet generator (Johnson et al.'s network as Zhu et al. use
it), the 70×70 PatchGAN discriminator, the least-squares GAN, cycle and identity losses,
the image pool, the linear-decay schedule and ``CycleGANStep``, one update for the course's
one training loop (``nstcourse.training.train``); ``data``: two folders of images as
unpaired random crops; ``recipes``: ``CycleGANRecipe`` and ``train_cyclegan``; ``metrics``:
offline measures of a translator. The shipped checkpoint and notebook 11 come later.
Built on the plumbing of ``nstcourse``; knows no other track.
"""
