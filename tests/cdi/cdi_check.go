// SPDX-License-Identifier: Apache-2.0

// cdi_check proves "gpucap cdi" with the reference CDI library: the specs it
// writes pass the CDI JSON schema and the library's own checks, and applied
// to an OCI runtime spec they give the container the library, its
// /etc/ld.so.preload, the region and node directories, the limits file and
// the caps in the environment.
//
// usage: cdi_check GPUCAP WORKDIR
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/container-orchestrated-devices/container-device-interface/pkg/cdi"
	"github.com/container-orchestrated-devices/container-device-interface/schema"
	oci "github.com/opencontainers/runtime-spec/specs-go"
)

const (
	containerLibrary = "/usr/local/vgpu/libvgpu.so"
	hostLibrary      = "/usr/lib/x86_64-linux-gnu/gpucap/libgpucap.so"
)

var failures int

func check(ok bool, format string, args ...interface{}) {
	if !ok {
		failures++
		fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	}
}

func gpucapCDI(gpucap string, args ...string) {
	cmd := exec.Command(gpucap, append([]string{"cdi"}, args...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: gpucap cdi %s: %v\n", strings.Join(args, " "), err)
		os.Exit(1)
	}
}

func findMount(spec *oci.Spec, destination string) *oci.Mount {
	for i := range spec.Mounts {
		if spec.Mounts[i].Destination == destination {
			return &spec.Mounts[i]
		}
	}
	return nil
}

func hasAll(have []string, want ...string) bool {
	set := map[string]bool{}
	for _, h := range have {
		set[h] = true
	}
	for _, w := range want {
		if !set[w] {
			return false
		}
	}
	return true
}

func checkMount(spec *oci.Spec, destination, source, kind string, options ...string) {
	m := findMount(spec, destination)
	if m == nil {
		check(false, "no mount at %s in %+v", destination, spec.Mounts)
		return
	}
	check(m.Source == source, "mount %s: source %q, want %q", destination, m.Source, source)
	check(m.Type == kind, "mount %s: type %q, want %q", destination, m.Type, kind)
	check(hasAll(m.Options, options...), "mount %s: options %v, want %v", destination, m.Options, options)
}

func inject(cache *cdi.Cache, device string) *oci.Spec {
	spec := &oci.Spec{
		Process: &oci.Process{Env: []string{"PATH=/usr/bin:/bin"}},
		Linux:   &oci.Linux{},
	}
	unresolved, err := cache.InjectDevices(spec, device)
	check(err == nil && len(unresolved) == 0, "InjectDevices(%s): %v, unresolved %v", device, err, unresolved)
	return spec
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: cdi_check GPUCAP WORKDIR")
		os.Exit(2)
	}
	gpucap, work := os.Args[1], os.Args[2]
	specDir := filepath.Join(work, "cdi")
	preload := filepath.Join(work, "ld.so.preload")
	regions := filepath.Join(work, "regions")
	nodeDir := filepath.Join(work, "node")
	limits := filepath.Join(work, "limits.conf")
	os.RemoveAll(work)
	for _, dir := range []string{specDir, regions, nodeDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}

	// A tmpfs region per container, an SM cap, a node directory and a
	// limits file; and one region directory on the host shared by the
	// containers given the device, without caps.
	gpucapCDI(gpucap, "--name", "mem8g", "--memory", "8g", "--sm", "30", "--library", hostLibrary,
		"--preload-file", preload, "--node-dir", nodeDir, "--limits-file", limits,
		"--output", filepath.Join(specDir, "gpucap.io-cap-mem8g.json"))
	gpucapCDI(gpucap, "--name", "claim-0f3a", "--library", hostLibrary, "--preload-file", preload,
		"--region-dir", regions, "--output", filepath.Join(specDir, "gpucap.io-cap-claim-0f3a.json"))

	// The schema must be the real one: it rejects what it should.
	builtin := schema.BuiltinSchema()
	bad := []byte(`{"cdiVersion":"0.5.0","kind":"gpucap.io/cap","devices":[{"name":"x","containerEdits":{"mounts":[{"containerPath":"/x"}]}}]}`)
	check(builtin.ValidateData(bad) != nil, "the CDI schema accepted a mount without hostPath: it is not loaded")
	for _, name := range []string{"gpucap.io-cap-mem8g.json", "gpucap.io-cap-claim-0f3a.json"} {
		err := builtin.ValidateFile(filepath.Join(specDir, name))
		check(err == nil, "%s fails the CDI schema: %v", name, err)
	}

	cache, err := cdi.NewCache(cdi.WithSpecDirs(specDir), cdi.WithAutoRefresh(false))
	check(err == nil, "NewCache: %v", err)
	for path, errs := range cache.GetErrors() {
		check(len(errs) == 0, "the CDI library rejects %s: %v", path, errs)
	}
	check(hasAll(cache.ListDevices(), "gpucap.io/cap=mem8g", "gpucap.io/cap=claim-0f3a"),
		"devices %v", cache.ListDevices())

	content, err := os.ReadFile(preload)
	check(err == nil && string(content) == containerLibrary+"\n",
		"the preload file holds %q (%v), want %q", content, err, containerLibrary+"\n")

	spec := inject(cache, "gpucap.io/cap=mem8g")
	checkMount(spec, containerLibrary, hostLibrary, "", "ro", "bind")
	checkMount(spec, "/etc/ld.so.preload", preload, "", "ro", "bind")
	checkMount(spec, "/run/gpucap", "tmpfs", "tmpfs", "nosuid", "nodev", "mode=1777")
	checkMount(spec, "/run/gpucap-node", nodeDir, "", "rw", "bind")
	checkMount(spec, "/etc/gpucap/limits.conf", limits, "", "ro", "bind")
	env := spec.Process.Env
	check(hasAll(env, "PATH=/usr/bin:/bin", "GPUCAP_REGION=/run/gpucap/cudevshr.cache",
		"CUDA_DEVICE_MEMORY_LIMIT=8589934592", "CUDA_DEVICE_SM_LIMIT=30", "GPUCAP_NODE_DIR=/run/gpucap-node"),
		"environment %v", env)

	spec = inject(cache, "gpucap.io/cap=claim-0f3a")
	checkMount(spec, "/run/gpucap", regions, "", "rw", "bind")
	check(findMount(spec, "/run/gpucap-node") == nil, "a node directory without --node-dir")
	check(hasAll(spec.Process.Env, "GPUCAP_REGION=/run/gpucap/cudevshr.cache", "GPUCAP_NODE_DIR="),
		"environment %v", spec.Process.Env)
	for _, e := range spec.Process.Env {
		check(!strings.HasPrefix(e, "CUDA_DEVICE_MEMORY_LIMIT="), "a memory cap without --memory: %s", e)
	}

	if failures > 0 {
		fmt.Fprintf(os.Stderr, "%d checks failed\n", failures)
		os.Exit(1)
	}
	fmt.Println("ok cdi: 2 specs valid, injected into OCI specs as expected")
}
