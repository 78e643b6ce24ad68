package core

// Interconnect is what links a pool's nodes.
type Interconnect struct {
	// Domain names the network the pool's nodes share.
	Domain string `json:"domain,omitempty"`
	// Gbps is the bandwidth between two of its nodes, in Gbit/s.
	Gbps float64 `json:"gbps,omitempty"`
	// MultiNode says whether gangs may span the pool's nodes.
	MultiNode bool `json:"multi_node,omitempty"`
}

// Prices are what a pool charges per hour, in dollars.
type Prices struct {
	// GPUHour is the price of one GPU-hour by normalized model.
	GPUHour    map[string]float64 `json:"gpu_hour,omitempty"`
	CPUHour    float64            `json:"cpu_hour,omitempty"`
	MemGiBHour float64            `json:"mem_gib_hour,omitempty"`
}
