package server

import (
	"context"
	"fmt"
	"log/slog"

	"lode.dev/lode/internal/driver/kubernetes"
	"lode.dev/lode/internal/poolfile"
)

// startDrivers starts a driver for every pool of the pools file whose
// driver runs in the server (kubernetes); agent pools need none. Drivers
// join their pools through the API as agents do, so they start once it
// serves, and stop with the local agent, before it stops.
func (s *Server) startDrivers(ctx context.Context) error {
	for _, def := range s.poolDefs {
		if def.Driver != poolfile.DriverKubernetes {
			continue
		}
		pool, err := s.store.PoolGetByName(ctx, def.Name)
		if err != nil {
			return fmt.Errorf("pool %s: %w", def.Name, err)
		}
		d, err := kubernetes.New(kubernetes.Config{
			Pool: def.Name, JoinToken: s.api.InternalJoinToken(pool.ID), Server: s.url, PodServer: s.url, CA: s.ca.CertPEM(), Def: def.Kubernetes,
			Version: s.cfg.Version, Logger: s.cfg.Logger.With("component", "kubernetes"),
		})
		if err != nil {
			return err
		}
		s.agentWG.Add(1)
		go func() {
			defer s.agentWG.Done()
			if err := d.Run(ctx); err != nil {
				s.cfg.Logger.Error("kubernetes pool stopped", slog.String("pool", def.Name), slog.Any("err", err))
			}
		}()
	}
	return nil
}
