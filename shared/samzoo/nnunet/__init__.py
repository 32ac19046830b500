"""nnU-Net v2 inside samzoo: raw datasets written from samzoo datalists (with nnU-Net's ignore label for sparse
annotations), subset manifests, and the hooks that run nnU-Net's trainer and predictor through MONAI's
``monai.apps.nnunet`` integration."""
