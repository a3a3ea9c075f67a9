"""§4 of the paper: MNIST digits with the Table 1 CNN and the Table 2 feed-forward net."""
