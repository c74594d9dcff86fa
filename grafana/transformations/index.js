// Grafana's own transformation code (@grafana/data), exposed to a test page as
// window.grafanaTransform(frames, transformations). buildqueue/transformations.py bundles
// this file with esbuild and runs it in headless Chromium on the view's real rows, so the
// dashboard's panels are checked with the code Grafana runs, not with a re-implementation.
import {
  dataFrameFromJSON,
  dateTime,
  getFieldDisplayName,
  rangeUtil,
  standardTransformers,
  standardTransformersRegistry,
  transformDataFrame,
} from '@grafana/data';

// Grafana's app fills this registry at start-up (public/app/features/transformers/
// standardTransformers.ts); @grafana/data leaves it empty. We register every transformer
// @grafana/data ships, once per id (standardTransformers also holds deprecated aliases).
standardTransformersRegistry.setInit(() => {
  const seen = new Set();
  return Object.values(standardTransformers)
    .filter((info) => !seen.has(info.id) && seen.add(info.id))
    .map((info) => ({
      id: info.id,
      name: info.name,
      description: info.description,
      transformation: info,
      editor: () => null,
      imageDark: '',
      imageLight: '',
    }));
});

function toPlain(frames) {
  return frames.map((frame) => ({
    name: frame.name ?? null,
    refId: frame.refId ?? null,
    length: frame.length,
    fields: frame.fields.map((field) => ({
      name: field.name,
      displayName: getFieldDisplayName(field, frame, frames),
      type: field.type,
      values: Array.from(field.values, (v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v)),
    })),
  }));
}

// frames: DataFrameJSON objects (what Grafana's backend sends the browser);
// transformations: a panel's "transformations" list, as in the dashboard JSON.
window.grafanaTransform = (frames, transformations) => {
  const unknown = transformations
    .map((t) => t.id)
    .filter((id) => !standardTransformersRegistry.getIfExists(id));
  if (unknown.length) {
    return Promise.reject(
      new Error(
        `transformation(s) ${unknown.join(', ')} are not among @grafana/data's standard ` +
          `transformers (${standardTransformersRegistry.list().map((i) => i.id).join(', ')})`
      )
    );
  }
  const input = frames.map((frame) => dataFrameFromJSON(frame));
  return new Promise((resolve, reject) => {
    let last = null;
    transformDataFrame(transformations, input).subscribe({
      next: (value) => {
        last = value;
      },
      error: reject,
      complete: () => resolve(toPlain(last ?? [])),
    });
  });
};

// Grafana's $__interval for a panel: rangeUtil.calculateInterval(range, maxDataPoints,
// minInterval), what Grafana's query runner puts in the panel's query before sending it.
window.grafanaInterval = (fromMs, toMs, maxDataPoints, minInterval) => {
  const from = dateTime(fromMs);
  const to = dateTime(toMs);
  return rangeUtil.calculateInterval({ from, to, raw: { from, to } }, maxDataPoints, minInterval);
};

window.grafanaDataVersion = GRAFANA_DATA_VERSION;
