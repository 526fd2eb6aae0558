"""cats_dogs_other: a cats / dogs / other image classifier served behind OAuth2 (Auth0) tokens."""
