// Stand-ins for the Vue components that FATE-Board's metric transforms only name as `tag:`.
// The transforms never call them; the board's renderer (fate-ui-component's `parse`) mounts them
// in the browser. Here each is a marker that render.mjs reads back to tell which widget the
// board would draw. Not FATE-Board code.
const widget = (name: string) => Object.freeze({ __fateBoardWidget: name });

// @/components/LineChart (FATE-Board src/components/LineChart/index.ts: Charts.vue, LineChart.vue)
export const FCharts = widget('FCharts');
export const FLine = widget('FLine');
// @/components/RangeTable (src/components/RangeTable/index.ts: RangeTable.vue)
export const FRangeTable = widget('FRangeTable');
// fate-ui-component (packages/fate-ui-component): the table, select and text row widgets
export const FTable = widget('FTable');
export const FSelection = widget('FSelection');
export const FRow = widget('FRow');
