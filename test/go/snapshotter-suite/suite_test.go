// containerd's own snapshotter test suite (snapshots/testsuite, the Go one that
// containerd runs against overlayfs, native and btrfs) run against augur over
// containerd's proxy client: every case starts its own `augur serve` on the
// root the suite hands it and talks to it over the gRPC socket, exactly as
// containerd's proxy plugin does.
//
// Built in GOPATH mode from Debian's packaged sources (see scripts/go-suite.sh):
// AUGUR_MAIN names augur's CLI entry point (dist/snapshotter/cli/main.js).
package snapshottersuite

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
)

func TestAugur(t *testing.T) {
	main := os.Getenv("AUGUR_MAIN")
	if main == "" {
		t.Fatal("AUGUR_MAIN must name augur's dist/snapshotter/cli/main.js")
	}
	testsuite.SnapshotterSuite(t, "augur", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		return startAugur(ctx, main, root)
	})
}

// startAugur runs `augur serve` on root (nothing lazy, no tracing: the suite
// checks the snapshots API, not image pulls) and returns a proxy snapshotter on
// its socket; cleanup closes the connection and stops augur with SIGTERM.
func startAugur(ctx context.Context, main, root string) (snapshots.Snapshotter, func() error, error) {
	sock := filepath.Join(root, "augur.sock")
	cmd := exec.Command("node", main, "serve",
		"--root", root, "--socket", sock, "--api", filepath.Join(root, "api.sock"),
		"--cache-dir", filepath.Join(root, "cache"), "--no-lazy", "--no-trace", "--no-prefetch",
		"--containerd-address", filepath.Join(root, "no-containerd.sock"))
	log, err := os.Create(filepath.Join(root, "..", "augur.log"))
	if err != nil {
		return nil, nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); log.Close() }()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				return fmt.Errorf("augur exited: %w", err)
			}
			return nil
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("augur did not stop within 20s of SIGTERM")
		}
	}
	if err := waitForSocket(sock, exited); err != nil {
		_ = stop()
		return nil, nil, err
	}
	conn, err := grpc.Dial("unix://"+sock, grpc.WithInsecure())
	if err != nil {
		_ = stop()
		return nil, nil, err
	}
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "augur")
	return sn, func() error {
		conn.Close()
		return stop()
	}, nil
}

func waitForSocket(sock string, exited <-chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("augur exited before listening: %v", err)
		default:
		}
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("augur did not listen on %s within 30s", sock)
}
