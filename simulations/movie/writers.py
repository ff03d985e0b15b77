"""Movie files from RGB frames: MP4 through the ffmpeg binary that the ``imageio-ffmpeg``
package ships, GIF through Pillow. Both are optional (the 'movies' extra) and imported when a
writer is made, so that the message can say how to install them."""

import numpy as np


class Mp4Writer:
    def __init__(self, path, size, fps):
        try:
            import imageio_ffmpeg
        except ImportError as err:
            raise ImportError(
                "writing MP4 needs imageio-ffmpeg, which ships an ffmpeg binary: "
                "pip install imageio-ffmpeg (or the 'movies' extra)"
            ) from err
        path.parent.mkdir(parents=True, exist_ok=True)
        # H.264 at constant quality; yuv420p plays everywhere. macro_block_size=2 keeps the
        # requested (even) size instead of rescaling to a multiple of 16.
        self.gen = imageio_ffmpeg.write_frames(
            str(path),
            (size, size),
            fps=fps,
            codec="libx264",
            macro_block_size=2,
            quality=None,
            ffmpeg_log_level="error",
            output_params=["-crf", "26", "-preset", "medium", "-movflags", "+faststart"],
        )
        self.gen.send(None)

    def append(self, frame):
        self.gen.send(np.ascontiguousarray(frame))

    def close(self):
        self.gen.close()


class GifWriter:
    def __init__(self, path, size, fps, swatches):
        try:
            from PIL import Image
        except ImportError as err:
            raise ImportError("writing GIF needs Pillow: pip install pillow") from err
        self.Image, self.path, self.fps, self.swatches = Image, path, fps, swatches
        self.frames, self.palette = [], None

    def append(self, frame):
        if self.palette is None:
            # One palette for the whole movie (a per-frame palette makes the shading
            # flicker), from the first frame plus large swatches of the token colours: the
            # tokens cover too few pixels for median cut to keep their colours otherwise.
            strip = self.swatches(frame.shape[1])
            sample = np.concatenate([frame, strip], axis=0)
            quantized = self.Image.fromarray(sample).quantize(colors=128, method=self.Image.Quantize.MEDIANCUT)
            pal = np.array(quantized.getpalette()[: 3 * 128], dtype=np.int64).reshape(-1, 3)
            # Median cut returns box averages: snap entries to the exact colours they stand
            # for (white would otherwise come out as 252).
            exact = np.unique(strip.reshape(-1, 3), axis=0).astype(np.int64)
            dist = np.abs(pal[:, None, :] - exact[None]).sum(axis=-1)
            near = dist.min(axis=1) <= 12
            pal[near] = exact[dist.argmin(axis=1)[near]]
            self.palette = pal
        # Exact nearest palette entry per distinct colour (Pillow's palette lookup is
        # approximate and maps white to a grey).
        keys = (frame[..., 0].astype(np.int64) << 16) | (frame[..., 1].astype(np.int64) << 8) | frame[..., 2]
        uniq, inverse = np.unique(keys.ravel(), return_inverse=True)
        colours = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], axis=-1)
        nearest = ((colours[:, None, :] - self.palette[None]) ** 2).sum(axis=-1).argmin(axis=1)
        index = nearest[inverse].astype(np.uint8).reshape(frame.shape[:2])
        h, w = index.shape
        im = self.Image.frombuffer("P", (w, h), index.tobytes(), "raw", "P", 0, 1)
        im.putpalette(self.palette.astype(np.uint8).ravel().tolist())
        self.frames.append(im)

    def close(self):
        if not self.frames:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # GIF stores delays in hundredths of a second.
        delay = max(int(round(100 / self.fps)), 2) * 10
        self.frames[0].save(
            self.path, save_all=True, append_images=self.frames[1:], duration=delay, loop=0, optimize=True, disposal=1
        )
