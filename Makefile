# make run   — the main job: tunneld with a simulated iPhone (no hardware needed)
# make test  — install missing peers and tools, then run every check
# make docs  — regenerate docs/cli.md and README.md's command list from the command tree
# make man   — man pages for every command in bin/man
.PHONY: run test build docs man

# -buildvcs=auto stamps the git revision that 'iosmux version' prints
# (where a GOFLAGS=-buildvcs=false would turn it off).
build:
	go build -buildvcs=auto -o bin/iosmux ./cmd/iosmux

run: build
	./bin/iosmux tunneld --simulate 1

test:
	scripts/test.sh

docs:
	go test ./cmd/iosmux -run TestCLIDoc -update

man: build
	./bin/iosmux docs man bin/man
