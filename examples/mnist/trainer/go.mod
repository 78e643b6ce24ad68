module lode.dev/examples/mnist

go 1.26
