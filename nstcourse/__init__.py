"""nstcourse: the helper package of a Jupyter course on neural image transformation.

A map of the package, so that the code behind a notebook is one step away; (NN) is the
notebook that introduces a module. Imports are explicit, one module at a time:
``from nstcourse.sr.espcn import ESPCN``, ``from nstcourse.features import VGGFeatures``.

Layers point one way: plumbing knows no track; a track knows plumbing and itself, never
another track; only the command line (``cli``) knows argparse, and no other layer
imports it. ``tests/test_layers.py`` checks these imports.

Plumbing, flat in ``nstcourse/``:

- ``images``: files, PIL and NumPy in and out as (N, 3, H, W) RGB tensors in [0, 1] (00)
- ``runmode``: run modes (full, smoke), budgets, devices, seeds (00, every notebook)
- ``data``: the sample-image catalog; training and style images from the data folder (00)
- ``vgg_weights``: find, download, verify and read pretrained VGG weights (00)
- ``features``: ``VGGFeatures``, a frozen VGG extractor with the papers' layer names (00)
- ``losses``: content, Gram, guided Gram, style and TV losses (01)
- ``colour``: luminance and colour matching; MATLAB's YCbCr and Y; 8-bit quantisation (03)
- ``macs``: counting the multiply-accumulates of a network's convolutions (04)
- ``checkpoints``: save, load and read the metadata of course checkpoints (04)
- ``metrics``: PSNR and SSIM on Y with a border shave, as the SR papers score (05); the
  white-blob share of stylised images (04); a sharpness score, ``mean_gradient`` (08)
- ``training``: the resumable loop: ``train``, ``supervised_step``, ``optimizer_step`` (07)
- ``recipes``: ``run_recipe``, the one protocol every trained checkpoint goes through
- ``inference``: the fast inference path of a trained network (``prepare_for_inference``)
- ``budget``: how much memory a command may use and how much a piece of work needs
- ``download``: verified downloads and safe archive extraction
- ``files``: atomic writes and sha256 checksums

The style track, ``nstcourse/style/`` (notebooks 01-04, 09, 10):

- ``style.gatys``: optimising the image: content reconstruction, texture synthesis (01),
  style transfer (02), colour, space and scale control (03)
- ``style.fast_style``: Johnson's ``TransformNet`` and ``PerceptualLoss`` (04)
- ``style.recipes``: the recipe dataclasses and ``train_style`` (04)
- ``style.models``: the shipped style networks by name, ``load_style_model`` (04)
- ``style.cin``: conditional instance normalisation, one network for many styles (09)
- ``style.adain``: AdaIN, the encoder-decoder for arbitrary styles (10)
- ``style.reference``: lengstrom's reference networks in PyTorch (benchmarks, tests)

The super-resolution track, ``nstcourse/sr/`` (notebooks 05-08):

- ``sr.data``: MATLAB's bicubic degradation, the benchmark sets, training patches (05)
- ``sr.srcnn``: SRCNN (05)
- ``sr.models``: what each model is fed, ``super_resolve``, ``evaluate``, checkpoints (05)
- ``sr.recipes``: the recipe dataclasses and ``train_sr`` (05)
- ``sr.reference``: third-party reference checkpoints loaded into our networks (05)
- ``sr.espcn``: ESPCN and the sub-pixel convolution (06)
- ``sr.vdsr``: VDSR, residual learning (07)
- ``sr.srgan``: SRResNet, the discriminator, the VGG content loss, ``SRGANStep`` (08)
- ``sr.perceptual``: Johnson et al.'s feature-loss SR network and loss, ``feature_distance`` (08)

The translation track, ``nstcourse/translate/`` (CycleGAN, notebook 11):

- ``translate.cyclegan``: the ResNet generator, the 70×70 PatchGAN, LSGAN, cycle and
  identity losses, the image pool and ``CycleGANStep`` for the one training path
- ``translate.data``: two folders of images as unpaired random crops
- ``translate.recipes``: ``CycleGANRecipe``, ``train_cyclegan`` and ``TranslationScore``
- ``translate.metrics``: offline measures (VGG-feature probe, VGG-KID, cycle L1, spread)
- ``translate.models``: the shipped horse ↔ zebra model, ``translate_image`` at any size

The notebook UI:

- ``plotting``: figures of images side by side, feature maps, loss curves (00)
- ``widgets``: ipywidgets sliders for style transfer and style mixes (02), a picture
  menu with an upload (11)
- ``runner``: runs the notebooks headless with papermill (``nstcourse run-notebooks``)
- ``grading``: what the graded exercises use (``unavailable``) (11)
- ``editions``: the student edition of the notebooks (``nstcourse student-edition``)

The command line, ``nstcourse/cli/``: ``cli.notebooks`` (``run-notebooks``,
``student-edition``), ``cli.stylize`` (``stylize``), ``cli.style`` (``fast-stylize``,
``train-style``), ``cli.sr`` (``upscale``, ``train-sr``), ``cli.translate``
(``translate``, ``train-cyclegan``), and ``cli.common`` (what they share: argument types,
checks, the training runner, exit codes).
"""

__version__ = "0.1.0"
