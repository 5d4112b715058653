//! The frame the bench's SVG charts share: size, caption, label areas, legend, and the error
//! a failed drawing call becomes.

use std::path::Path;

use anyhow::anyhow;
use plotters::coord::ranged1d::AsRangedCoord;
use plotters::prelude::*;

/// A failed drawing call on an SVG chart.
pub type DrawError = DrawingAreaErrorKind<std::io::Error>;

/// An SVG chart over the axes `X` and `Y`, as `body` gets it.
pub type Chart<'a, 'b, X, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>;

/// Draws a 960 x 600 chart to `path`: `caption` on top, axes over `x` and `y`, what `body`
/// draws on them (mesh and series), then the series' legend at `legend`.
pub fn draw<X: AsRangedCoord, Y: AsRangedCoord>(
    path: &Path,
    caption: &str,
    (x, y): (X, Y),
    legend: SeriesLabelPosition,
    body: impl FnOnce(&mut Chart<'_, '_, X::CoordDescType, Y::CoordDescType>) -> Result<(), DrawError>,
) -> anyhow::Result<()> {
    let failed = |e: DrawError| anyhow!("cannot draw {}: {e}", path.display());
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(failed)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(failed)?;
    body(&mut chart).map_err(failed)?;
    chart
        .configure_series_labels()
        .position(legend)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(failed)?;
    root.present().map_err(failed)?;
    Ok(())
}
