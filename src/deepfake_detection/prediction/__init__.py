"""`deepfake-predict`: P(Fake) for unlabelled images with a trained checkpoint."""
