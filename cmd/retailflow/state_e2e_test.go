package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/retailflow/retailflow/processors/generate"
	"github.com/retailflow/retailflow/topology"
	"github.com/retailflow/retailflow/topology/orderledger"
)

// restoredLine is a run process's "restored state" log line.
type restoredLine struct {
	Records int64   `json:"records"`
	Keys    int64   `json:"keys"`
	Store   string  `json:"store"`
	Full    []int32 `json:"full"`
	Tail    []int32 `json:"tail"`
}

// TestPersistentStoreRestoresOnlyTheTail (issue 15, real broker): `run --state.mode pebble`
// is stopped and started again; the restart reads no changelog record (its store is complete);
// while it is away another instance (its own directory) processes new traffic, and when it
// comes back it reads exactly the changelog records that instance wrote. After each stop its
// store holds exactly the changelog's last value of every order, byte for byte.
func TestPersistentStoreRestoresOnlyTheTail(t *testing.T) {
	needServices(t)
	base := testConfig(t, 2)
	body, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{"0": filepath.Join(t.TempDir(), "state-0"), "1": filepath.Join(t.TempDir(), "state-1")}
	cfgs := map[string]string{}
	for id, dir := range dirs {
		b := strings.Replace(string(body), "log:\n  level: warn\n", "log:\n  level: info\n  format: json\n", 1)
		b += "state:\n  mode: pebble\n  dir: " + dir + "\n"
		cfgs[id] = base + "." + id + ".yaml"
		if err := os.WriteFile(cfgs[id], []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, stderr, code := runCLI(t, "", "topics", "create", "--config", base); code != 0 {
		t.Fatalf("topics create: %s", stderr)
	}
	c, err := LoadConfig(cfgs["0"], nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	app := &App{Stdout: &syncBuffer{}, Stderr: &syncBuffer{}, Stdin: strings.NewReader("")}
	traffic := func(seed uint64) {
		tr, err := generate.Generate(generate.Options{Seed: seed, Orders: 60})
		if err != nil {
			t.Fatal(err)
		}
		if err := produceTraffic(ctx, app, c, tr, 0); err != nil {
			t.Fatalf("produce traffic: %v", err)
		}
	}
	// runUntilCaughtUp runs instance id until the group has committed every input record,
	// stops it (as SIGTERM does) and returns its restore line.
	runUntilCaughtUp := func(id string) restoredLine {
		t.Helper()
		rctx, stop := context.WithCancel(ctx)
		var stderr syncBuffer
		done := make(chan int, 1)
		go func() {
			done <- runContext(rctx, []string{"run", "--config", cfgs[id], "--instance-id", id}, strings.NewReader(""), &syncBuffer{}, &stderr)
		}()
		waitFor(t, 90*time.Second, "instance "+id+" caught up", func() string {
			if !strings.Contains(stderr.String(), `"restored state"`) {
				return "not restored yet"
			}
			return behind(t, c)
		})
		stop()
		if code := <-done; code != 0 {
			t.Fatalf("run %s exited %d: %s", id, code, stderr.String())
		}
		var lines []restoredLine
		sc := bufio.NewScanner(strings.NewReader(stderr.String()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if bytes.Contains(sc.Bytes(), []byte(`"restored state"`)) {
				var l restoredLine
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
					t.Fatal(err)
				}
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || lines[0].Store != "disk" {
			t.Fatalf("run %s: want one disk restore, got %+v; log:\n%s", id, lines, stderr.String())
		}
		return lines[0]
	}

	traffic(1)
	if l := runUntilCaughtUp("0"); len(l.Full) != 2 || l.Records != 0 {
		t.Fatalf("first start: %+v, want a full restore of the 2 empty partitions", l)
	}
	checkStoreIsChangelog(t, c, dirs["0"])

	traffic(2)
	if l := runUntilCaughtUp("0"); len(l.Full) != 0 || len(l.Tail) != 2 || l.Records != 0 {
		t.Fatalf("restart: %+v, want a tail restore of 0 records", l)
	}
	checkStoreIsChangelog(t, c, dirs["0"])

	traffic(3)
	before := len(readAll(t, c, c.Topics.Changelog))
	if l := runUntilCaughtUp("1"); len(l.Full) != 2 {
		t.Fatalf("instance 1 (empty directory): %+v, want a full restore", l)
	}
	written := int64(len(readAll(t, c, c.Topics.Changelog)) - before)
	l := runUntilCaughtUp("0")
	if len(l.Full) != 0 || l.Records != written || written == 0 {
		t.Fatalf("restart after instance 1 wrote %d changelog records: %+v, want a tail restore of exactly those", written, l)
	}
	checkStoreIsChangelog(t, c, dirs["0"])
}

// behind says which input partition the ledger group has not committed to its end ("" when
// caught up).
func behind(t *testing.T, c Config) string {
	cl, err := kgo.NewClient(c.KafkaConn().Options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var in []string
	for _, n := range []string{c.Topics.Orders, c.Topics.Shipments, c.Topics.Returns, c.Topics.Loyalty, c.Topics.ERP} {
		in = append(in, n)
	}
	ends, err := adm.ListEndOffsets(context.Background(), in...)
	if err != nil {
		return err.Error()
	}
	com, err := adm.FetchOffsets(context.Background(), c.Runtime.Group)
	if err != nil {
		return err.Error()
	}
	msg := ""
	n := 0
	ends.Each(func(o kadm.ListedOffset) {
		n++
		if o.Err != nil {
			msg = o.Topic + ": " + o.Err.Error()
		} else if at, ok := com.Lookup(o.Topic, o.Partition); o.Offset > 0 && (!ok || at.At < o.Offset) {
			msg = o.Topic + " is behind"
		}
	})
	if n != 2*len(in) {
		return "end offsets incomplete"
	}
	return msg
}

// checkStoreIsChangelog compares the stopped instance's store with the changelog's last value
// per key, and its checkpoints' key counts with the number of orders.
func checkStoreIsChangelog(t *testing.T, c Config, dir string) {
	t.Helper()
	want := map[string][]byte{}
	for _, r := range readAll(t, c, c.Topics.Changelog) {
		if r.Value == nil {
			delete(want, string(r.Key))
		} else {
			want[string(r.Key)] = r.Value
		}
	}
	got := map[string][]byte{}
	var keys int64
	err := topology.ScanStore(dir, orderledger.StageName, func(_ int32, k, v []byte) error {
		got[string(k)] = bytes.Clone(v)
		return nil
	}, func(_ int32, _, n int64) { keys += n })
	if err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 || len(got) != len(want) || keys != int64(len(want)) {
		t.Errorf("store has %d keys (checkpoints say %d), changelog %d", len(got), keys, len(want))
	}
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			t.Errorf("order %s: store and changelog differ", k)
		}
	}
}
