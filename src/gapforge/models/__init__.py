"""Band-gap predictors, the autoencoder and the generator."""
