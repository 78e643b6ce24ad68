package spec_test

import (
	"errors"
	"fmt"

	"lode.dev/lode/internal/spec"
)

func ExampleParse() {
	j, err := spec.Parse("train.yaml", []byte(`
name: resnet-sweep-3
run: python train.py --lr 0.1
resources: {gpus: 1, gpu: [RTX 3090, a100], cpus: 8, memory: 32GiB}
checkpoint: {path: /ckpt}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(j.Command)
	fmt.Println(j.Resources.MilliCPUs, j.Resources.GPUModels)
	fmt.Println(j.Project, j.Nodes, j.Classification, j.Checkpoint.Every)
	// Output:
	// [/bin/sh -c python train.py --lr 0.1]
	// 8000 [rtx3090 a100]
	// default 1 internal 5m0s
}

func ExampleParse_errors() {
	_, err := spec.Parse("train.yaml", []byte(`name: ResNet
run: python train.py
resources: {gpus: 1, memroy: 32GiB}
checkpoint: {path: /ckpt, every: 10 minutes}
`))
	fmt.Println(err)

	var errs *spec.Errors
	if errors.As(err, &errs) {
		fmt.Println(len(*errs), "problems; the first is at line", (*errs)[0].Line)
	}
	// Output:
	// train.yaml:1:7: name: "ResNet" is not a valid name (use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit, such as "resnet")
	// train.yaml:3:22: resources.memroy: unknown key (did you mean memory?)
	// train.yaml:4:34: checkpoint.every: "10 minutes" is not a duration (write it like 90s, 10m or 6h; the largest unit is h)
	// 3 problems; the first is at line 1
}
