"""A general pre-scan hook for the LimaCCDs channels that Sardana records by reference.

Sardana's NXscan recorder maps every frame reference of a scan as the *first* frame of the
referenced dataset (`sardana/macroserver/recorders/h5storage.py`: one `VirtualSource` of one
frame's shape per reference), while sardana-limaccd names the file that holds each frame from
the detector's own `saving_frame_per_file` (`client.py`, `Acquisition.next_ref_frames`: file
`frame // saving_frame_per_file`). With more than one frame per file, left on the detector by
another client (a bluesky plan, Jive), every point of a scan references the same file and the
scan file holds the first frame again and again. sardana-limaccd writes `saving_frame_per_file`
only once, when the Pool applies its memorized `SavingFramePerFile` (default 1). This hook sets
it again before every scan, through that controller attribute.
"""

from sardana.macroserver.macro import Macro

LIMA_CONTROLLER_CLASSES = {"LimaCCDTwoDController"}
FRAMES_PER_FILE = 1


class lima_one_frame_per_file(Macro):
    """Before a scan: one frame per file on each LimaCCDs detector of the active measurement group."""

    def run(self) -> None:
        group = self.getMeasurementGroup(self.getEnv("ActiveMntGrp"))
        controllers = {}
        for name in group.getChannelNames():
            channel = self.getExpChannel(name)
            if channel is None:  # a Tango attribute read as a channel: no Pool controller
                continue
            controller = channel.getControllerObj()
            if controller.getClassName() in LIMA_CONTROLLER_CLASSES:
                controllers[controller.getName()] = controller.getDeviceProxy()
        for name, proxy in controllers.items():
            before = proxy.read_attribute("SavingFramePerFile").value
            if before != FRAMES_PER_FILE:
                proxy.write_attribute("SavingFramePerFile", FRAMES_PER_FILE)
                self.info(
                    f"{name}: saving_frame_per_file {before} -> {FRAMES_PER_FILE} "
                    "(the scan file maps one frame per referenced file)"
                )
