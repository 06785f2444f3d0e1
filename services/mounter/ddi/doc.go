// Package ddi reads personalized developer disk images (iOS 17+): the
// BuildManifest.plist with one build identity per board, the identity a
// device needs (by its BoardId and ChipID), the image and trust cache that
// identity names, where such a bundle is usually found, and a download of
// a published one into iosmux's cache. services.md §2 describes the layout.
package ddi
