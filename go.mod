module lode.dev/lode

go 1.26.8
