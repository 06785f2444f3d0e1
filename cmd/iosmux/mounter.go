package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/iosmux/iosmux/cmd/iosmux/internal/progress"
	"github.com/iosmux/iosmux/services/mounter"
	"github.com/iosmux/iosmux/services/mounter/ddi"
	"github.com/iosmux/iosmux/services/mounter/tss"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/spf13/cobra"
)

const mounterHelp = `
The Developer Disk Image (DDI) of iOS 17+ and the mobile_image_mounter
service (docs/protocols/services.md §2, §3): list what is mounted, mount the
personalized DDI (auto-mount finds or downloads it), unmount, and read the
values personalization uses.

` + serviceTargetHelp

func newMounterCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mounter",
		Short: "the Developer Disk Image: list, mount, auto-mount, umount",
		Long:  mounterHelp,
		Example: `  iosmux mounter auto-mount
  iosmux mounter auto-mount --tunnel 00008110-001A2B3C4D5E6F70 --download
  iosmux mounter list --json`,
		RunE: groupRun,
	}
	cmd.AddCommand(newMounterListCmd(a), newMounterMountCmd(a, false), newMounterMountCmd(a, true),
		newMounterUmountCmd(a), newMounterNonceCmd(a), newMounterIdentifiersCmd(a))
	return cmd
}

func newMounterListCmd(a *app) *cobra.Command {
	return serviceCmd(a, "list", "list the mounted disk images",
		"Lists the mounted images: LookupImage's signatures and CopyDevices' entries (iOS 27\nanswers LookupImage with nothing even while the DDI is mounted).",
		"  iosmux mounter list\n  iosmux mounter list --tunnel 00008110-001A2B3C4D5E6F70 --json", 30*time.Second, nil,
		func(ctx context.Context, _ *cobra.Command, o *serviceOptions, dev reach.Opener) error {
			st, err := mounter.List(ctx, dev)
			if err != nil {
				return err
			}
			if o.asJSON {
				sigs := make([]string, len(st.Signatures))
				for i, s := range st.Signatures {
					sigs[i] = hex.EncodeToString(s)
				}
				return writeJSON(a.stdout, map[string]any{"udid": dev.UDID(), "mounted": st.Mounted(), "signatures": sigs, "entries": st.Entries})
			}
			if !st.Mounted() {
				fmt.Fprintf(a.stdout, "%s: no developer disk image mounted\n", dev.UDID())
				return nil
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TYPE\tMOUNT PATH\tSIGNATURE")
			for _, e := range st.Entries {
				fmt.Fprintf(w, "%s/%s\t%s\t%s\n", e.DiskImageType, e.PersonalizedImageType, e.MountPath, short(e.ImageSignature))
			}
			if len(st.Entries) == 0 {
				for _, s := range st.Signatures {
					fmt.Fprintf(w, "Personalized\t%s\t%s\n", mounter.MountPath, short(s))
				}
			}
			return w.Flush()
		})
}

func short(b []byte) string {
	s := hex.EncodeToString(b)
	if len(s) > 24 {
		return s[:24] + "…"
	}
	return s
}

// ddiFlags are the DDI source and signing flags of mount and auto-mount.
type ddiFlags struct {
	dir, cache, url, tssURL string
	download                bool
}

func (f *ddiFlags) add(cmd *cobra.Command, auto bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.dir, "ddi", "", "the personalized DDI `DIR`: Xcode's …/DeveloperDiskImages/iOS_DDI, a Restore folder or pymobiledevice3's cache")
	if auto {
		fl.BoolVar(&f.download, "download", false, "download the published personalized DDI into iosmux's cache first (--download-url)")
		fl.StringVar(&f.url, "download-url", "", "where --download fetches from: a folder URL with BuildManifest.plist, Image.dmg, Image.dmg.trustcache, or a .zip (env IOSMUX_DDI_URL; default "+ddi.DefaultDownloadURL+")")
		fl.StringVar(&f.cache, "ddi-cache", "", "iosmux's DDI cache `DIR` (default <user cache>/iosmux/ddi)")
	}
	fl.StringVar(&f.tssURL, "tss-url", "", "the signing server asked when the device keeps no manifest (env IOSMUX_TSS_URL; default Apple's, "+tss.DefaultURL+")")
}

func (f *ddiFlags) source(a *app) (mounter.Source, error) {
	if f.dir != "" {
		return mounter.Source{Dir: f.dir}, nil
	}
	home, _ := os.UserHomeDir()
	cache := f.cache
	if cache == "" {
		if c := a.getenv("XDG_CACHE_HOME"); c != "" {
			cache = filepath.Join(c, "iosmux", "ddi")
		} else if c, err := os.UserCacheDir(); err == nil {
			cache = filepath.Join(c, "iosmux", "ddi")
		}
	}
	src := mounter.Source{Locations: ddi.Locations(runtime.GOOS, home, cache)}
	if f.download {
		if cache == "" {
			return src, usagef("--download needs a cache folder: give --ddi-cache")
		}
		url := f.url
		if url == "" {
			url = a.getenv("IOSMUX_DDI_URL")
		}
		src.Download = &ddi.DownloadConfig{URL: url, CacheDir: cache, Client: &http.Client{Timeout: 30 * time.Minute}}
		src.Always = true
	}
	return src, nil
}

func (f *ddiFlags) tss(a *app) *tss.Client {
	url := f.tssURL
	if url == "" {
		url = a.getenv("IOSMUX_TSS_URL")
	}
	return &tss.Client{URL: url, HTTP: &http.Client{Timeout: time.Minute}}
}

func newMounterMountCmd(a *app, auto bool) *cobra.Command {
	var f ddiFlags
	use, short, long, example := "mount --ddi DIR", "mount a personalized DDI from a folder",
		`Mounts the personalized DDI in --ddi: picks the build identity for the device's
BoardId/ChipID, takes the manifest the device keeps for the image or else asks
the signing server (TSS), uploads the image and mounts it. Refuses early when
Developer Mode is off ('iosmux amfi enable').`,
		"  iosmux mounter mount --ddi /Library/Developer/DeveloperDiskImages/iOS_DDI\n  iosmux mounter mount --ddi ./Restore --tss-url http://127.0.0.1:8080/TSS/controller?action=2"
	if auto {
		use, short, long, example = "auto-mount", "find (or download) the personalized DDI and mount it",
			`Mounts the personalized DDI unless one is mounted: the folder in --ddi, else the
first found in iosmux's cache, Xcode's /Library/Developer/DeveloperDiskImages
(macOS) and pymobiledevice3's cache; --download fetches the published one into
the cache first. Then as 'mounter mount', and prints the services the mount
added to the device's RSD.`,
			"  iosmux mounter auto-mount\n  iosmux mounter auto-mount --download\n  iosmux mounter auto-mount --tunnel 00008110-001A2B3C4D5E6F70 --json"
	}
	return serviceCmd(a, use, short, long, example, 30*time.Minute, func(cmd *cobra.Command) { f.add(cmd, auto) },
		func(ctx context.Context, _ *cobra.Command, o *serviceOptions, dev reach.Opener) error {
			if !auto && f.dir == "" {
				return usagef("mount needs --ddi DIR (or use auto-mount)")
			}
			src, err := f.source(a)
			if err != nil {
				return err
			}
			out := a.progressOut(o.asJSON)
			cfg := mounter.MountConfig{TSS: f.tss(a), Progress: mountProgress(a, out, o.asJSON, dev.UDID())}
			defer cfg.Progress(mounter.Progress{Step: -1})
			var res *mounter.MountResult
			if auto {
				if src.Download != nil {
					src.Download.Progress = downloadProgress(out)
				}
				res, err = mounter.AutoMount(ctx, dev, src, cfg)
			} else {
				var b *ddi.Bundle
				if b, err = ddi.Open(f.dir); err == nil {
					cfg.Bundle = b
					res, err = mounter.Mount(ctx, dev, cfg)
				}
			}
			if err != nil {
				return err
			}
			cfg.Progress(mounter.Progress{Step: -1})
			if o.asJSON {
				return writeJSON(a.stdout, res)
			}
			printMount(a, res)
			return nil
		})
}

// mountProgress draws the steps as a spinner and the upload as a bar;
// Step -1 clears them.
func mountProgress(a *app, out progress.Out, asJSON bool, udid string) func(mounter.Progress) {
	var spin, up *progress.Bar
	last := mounter.Step(-1)
	return func(p mounter.Progress) {
		if p.Step < 0 {
			spin.Done()
			up.Done()
			return
		}
		if p.Step == mounter.StepUpload {
			if up == nil {
				spin.Done()
				up = out.Bytes(p.Total, "uploading the image")
			}
			up.Set(p.Done, p.Total)
			return
		}
		if p.Step == last {
			return
		}
		last = p.Step
		up.Done()
		if spin == nil {
			spin = out.Wait(p.Step.String())
		}
		spin.Describe(p.Step.String())
		if !out.On && !asJSON {
			a.log.Info("mounter: "+p.Step.String(), "udid", udid)
		}
	}
}

func downloadProgress(out progress.Out) func(string, int64, int64) {
	var bar *progress.Bar
	file := ""
	return func(name string, done, total int64) {
		if name != file {
			bar.Done()
			bar, file = out.Bytes(total, "downloading "+name), name
		}
		bar.Set(done, total)
	}
}

func printMount(a *app, r *mounter.MountResult) {
	if r.AlreadyMounted && r.Bytes == 0 {
		fmt.Fprintf(a.stdout, "%s: a developer disk image is already mounted\n", r.UDID)
		return
	}
	from := "the manifest the device keeps"
	if r.Manifest == mounter.FromTSS {
		from = "a manifest from the signing server"
	}
	mbs := 0.0
	if r.Upload > 0 {
		mbs = float64(r.Bytes) / r.Upload.Seconds() / 1e6
	}
	fmt.Fprintf(a.stdout, "%s: mounted %s at %s with %s (BoardId 0x%X, ChipID 0x%X; %d bytes at %.1f MB/s; %v in all)\n",
		r.UDID, filepath.Base(r.Image), mounter.MountPath, from, r.BoardID, r.ChipID, r.Bytes, mbs, r.Took.Round(time.Millisecond))
	if len(r.Services) > 0 {
		s := append([]string(nil), r.Services...)
		sort.Strings(s)
		fmt.Fprintf(a.stdout, "services now listed: %s\n", strings.Join(s, ", "))
	}
}

func newMounterUmountCmd(a *app) *cobra.Command {
	return serviceCmd(a, "umount", "unmount the developer disk image",
		"Unmounts the image at /System/Developer.", "  iosmux mounter umount", 30*time.Second, nil,
		func(ctx context.Context, _ *cobra.Command, o *serviceOptions, dev reach.Opener) error {
			err := mounter.Unmount(ctx, dev)
			if errors.Is(err, mounter.ErrNotMounted) {
				return fmt.Errorf("%s: no developer disk image is mounted", dev.UDID())
			}
			if err != nil {
				return err
			}
			if o.asJSON {
				return writeJSON(a.stdout, map[string]any{"udid": dev.UDID(), "unmounted": mounter.MountPath})
			}
			fmt.Fprintf(a.stdout, "%s: unmounted %s\n", dev.UDID(), mounter.MountPath)
			return nil
		})
}

func newMounterNonceCmd(a *app) *cobra.Command {
	return serviceCmd(a, "query-nonce", "print the personalization nonce",
		"Prints the DDI personalization nonce (QueryNonce) in hex.", "  iosmux mounter query-nonce", 30*time.Second, nil,
		func(ctx context.Context, _ *cobra.Command, o *serviceOptions, dev reach.Opener) error {
			n, err := mounter.QueryNonce(ctx, dev)
			if err != nil {
				return err
			}
			if o.asJSON {
				return writeJSON(a.stdout, map[string]any{"udid": dev.UDID(), "nonce": hex.EncodeToString(n)})
			}
			fmt.Fprintln(a.stdout, hex.EncodeToString(n))
			return nil
		})
}

func newMounterIdentifiersCmd(a *app) *cobra.Command {
	return serviceCmd(a, "query-identifiers", "print the personalization identifiers",
		"Prints the device's personalization identifiers (BoardId, ChipID, UniqueChipID, …):\nwhat picks the DDI's build identity and goes into the TSS request.",
		"  iosmux mounter query-identifiers --json", 30*time.Second, nil,
		func(ctx context.Context, _ *cobra.Command, o *serviceOptions, dev reach.Opener) error {
			ids, err := mounter.QueryIdentifiers(ctx, dev)
			if err != nil {
				return err
			}
			if o.asJSON {
				return writeJSON(a.stdout, plistJSON(ids.All))
			}
			return writeValue(a.stdout, ids.All, 0)
		})
}
