# make run   — the main job: tunneld with a simulated iPhone (no hardware needed)
# make test  — install missing peers and tools, then run every check
.PHONY: run test build

build:
	go build -o bin/iosmux ./cmd/iosmux

run: build
	./bin/iosmux tunneld --simulate 1

test:
	scripts/test.sh
